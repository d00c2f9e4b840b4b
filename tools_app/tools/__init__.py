"""One module per tool; importing this package registers them all."""

from . import create_directory, list_directory, read_file, write_file  # noqa: F401
