"""Command-line interface: ``fmri2image <command>``.

Each command lives in its own module exposing ``register(subparsers)``; the module
must import only the standard library at import time (heavy imports go inside the
handler) so that ``fmri2image --help`` stays fast.
"""
