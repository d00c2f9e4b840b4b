class ToolError(Exception):
    """A failure while running a tool, with a stable snake_case ``type`` for ``error.type``.

    ``retryable`` failures (timeouts, connection errors) are tried again up to ``max_attempts``.
    """

    def __init__(self, type: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.type = type
        self.message = message
        self.retryable = retryable

    def as_dict(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message}
