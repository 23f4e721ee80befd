"""
twistd's entry: `twistd -n exgateway [--config FILE] [--role all|frontend|hub]`.

`Options` parses and validates (a bad config stops start-up here, with every
problem listed); `makeService` only assembles, through gateway/service.py.
Directories are created and ports bound when the services start, so twistd
can bind 25 as root before dropping privileges.
"""

from __future__ import annotations

from twisted.python import usage

from gateway.config import ConfigError, load_config, path_problems
from gateway.configpath import find_config
from gateway.fastpath import dispatch
from gateway.nodeservices import GatewayService
from gateway.service import ROLES, build_service
from gateway.startup import log_observer
from gateway.workers import inherited_sockets


class Options(usage.Options):
    optParameters = [  # noqa: RUF012 (usage.Options reads the class attribute)
        ["config", "c", None, ("Config file (default: $EXGATEWAY_CONFIG, else /etc/exgateway/exgateway.toml, "
                               "else ./exgateway.toml, else the packaged sample).")],
        ["role", "r", "all", "Which tier to run: all, frontend or hub."],
        ["worker", None, "0", "Set by the gateway for its own worker processes ([server] workers); not for admins."],
    ]

    def postOptions(self) -> None:
        if self["role"] not in ROLES:
            raise usage.UsageError(f"--role must be one of {', '.join(ROLES)}, not {self['role']!r}")
        if not self["worker"].isdigit() or (int(self["worker"]) > 0 and not inherited_sockets()):
            raise usage.UsageError("--worker is set by the gateway for the worker processes it starts; leave it out")
        self["worker"] = int(self["worker"])
        location = find_config(self["config"])
        try:
            config = load_config(location.path)
            problems = path_problems(config)
            if problems:
                raise ConfigError(problems)
        except ConfigError as e:
            # Not a usage error: twistd's whole Usage block would bury the reason.
            raise SystemExit("\n".join(f"exgateway: not started: {p}" for p in e.problems)) from None
        # Workers are handed this absolute path: every process of the node reads the same file.
        self["config"] = location.path
        self["config_source"] = location.source
        self["gateway_config"] = config


def makeService(options: Options) -> GatewayService:
    from twisted.internet import reactor

    dispatch.install(reactor)
    return build_service(
        options["gateway_config"], options["role"], reactor, options["worker"], options["config"], options["config_source"],
        log_observer=log_observer(getattr(options, "parent", None), options["worker"]),
    )
