"""Where the files xsguard ships beside its package are: in the package (a wheel), else in the checkout."""

import os

PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def find(packaged: str, checkout: str, marker: str) -> str:
    """``xsguard/<packaged>`` when the wheel carries it, else ``<checkout>`` beside the package, as
    told by ``marker`` (a file or directory inside); the packaged place when neither has it."""
    for candidate in (os.path.join(PACKAGE, packaged), os.path.join(os.path.dirname(PACKAGE), checkout)):
        if os.path.exists(os.path.join(candidate, marker)):
            return candidate
    return os.path.join(PACKAGE, packaged)
