"""The configuration: its schema, loading it from a file, and telling its problems."""

from outreach.config.loading import (
    check_config_files,
    check_writable_directory,
    find_config_file,
    load_checked,
    load_config,
)
from outreach.config.schema import Imap, OAuth2, Rule, Segment, Server, Settings, Smtp

__all__ = [
    "Imap",
    "OAuth2",
    "Rule",
    "Segment",
    "Server",
    "Settings",
    "Smtp",
    "check_config_files",
    "check_writable_directory",
    "find_config_file",
    "load_checked",
    "load_config",
]
