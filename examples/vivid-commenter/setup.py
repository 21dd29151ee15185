from setuptools import find_packages, setup

setup(
    name="vivid-commenter",
    version="1.0.1",
    packages=find_packages(include=["core", "core.*", "app", "app.*"]),
)
