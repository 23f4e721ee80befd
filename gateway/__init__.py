"""
exgateway: an SMTP relay gateway for an organisation's devices and
applications, with Exchange Server 2016's transport model (receive
connectors, accepted domains, a frontend that proxies to a durable hub).
"""
