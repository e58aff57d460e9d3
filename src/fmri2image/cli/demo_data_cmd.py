"""(being written)"""


def register(subparsers) -> None:  # filled in by the command's owner
    return None
