"""One module per tool; importing this package registers them all."""

from . import (  # noqa: F401
    create_directory,
    delete_path,
    file_info,
    hash_file,
    http_fetch,
    list_directory,
    llm_chat,
    read_file,
    run_command,
    run_python,
    search_files,
    write_file,
)
