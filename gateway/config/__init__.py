"""
The configuration file: TOML in, frozen and validated objects out.

schema.py holds every setting once (key, parser, default, restart-only, doc
line); values.py the value types and their parsers; reader.py the walk that
collects every problem; settings.py the frozen objects; load.py, receive.py,
send.py and hop.py read the file into them. The names below are re-exported
so that `from gateway.config import X` serves callers without knowing the
layout.
"""

from gateway.config.load import Host, default_config_path, load_config, parse_config, path_problems, this_host
from gateway.config.reader import ConfigError, ConfigProblem
from gateway.config.schema import AUTH_BACKENDS, AUTH_MECHANISMS, MESSAGE_RATE_SOURCES, OAUTH_MECHANISMS, ROLES, TOP_KEYS
from gateway.config.settings import (
    AuthConfig,
    Config,
    DNSConfig,
    HubPool,
    LDAPConfig,
    LimitsConfig,
    MailboxConfig,
    MessageTrackingConfig,
    ProtocolLogConfig,
    QueueConfig,
    ReceiveConnector,
    RecipientValidationConfig,
    SendConnector,
)
from gateway.config.values import Binding, HostPort, parse_binding, parse_duration, parse_host_port, parse_port, parse_size

__all__ = [
    "AUTH_BACKENDS", "AUTH_MECHANISMS", "MESSAGE_RATE_SOURCES", "OAUTH_MECHANISMS", "ROLES", "TOP_KEYS",
    "AuthConfig", "Binding", "Config", "ConfigError", "ConfigProblem", "DNSConfig", "Host", "HostPort", "HubPool", "LDAPConfig",
    "LimitsConfig", "MailboxConfig", "MessageTrackingConfig", "ProtocolLogConfig", "QueueConfig", "ReceiveConnector",
    "RecipientValidationConfig", "SendConnector", "default_config_path", "load_config", "parse_binding", "parse_config",
    "parse_duration", "parse_host_port", "parse_port", "parse_size", "path_problems", "this_host",
]
