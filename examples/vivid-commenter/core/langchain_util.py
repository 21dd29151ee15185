"""Helpers shared by the agent's modules."""


def model_default() -> str:
    """Name of the model the agent uses unless configured otherwise."""
    return "gpt-4o-mini"
