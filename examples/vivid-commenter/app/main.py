"""Entrypoint of the vivid-commenter agent."""

from core.langchain_util import model_default


class Agent:
    model = model_default()

    def comment(self, post: str) -> str:
        return f"What a vivid post: {post[:40]}"


agent = Agent()


def serve() -> None:
    print(f"serving with {agent.model}")
