"""The one exception a user can cause. The CLI turns it into a single line on stderr."""


class SlimbertError(Exception):
    """A problem with the user's input or environment, stated with the thing and the fix."""
