from twisted.application.service import ServiceMaker

exgateway = ServiceMaker(
    "exgateway",
    "gateway.tap",
    "exgateway SMTP relay gateway: receive connectors, frontend proxy, durable hub",
    "exgateway",
)
