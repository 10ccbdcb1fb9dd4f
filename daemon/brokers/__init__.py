"""Brokers: the gateway port, the order lifecycle table, and the paper / live implementations."""

from daemon.brokers.base import Broker, BrokerEventSink, OpenOrder
from daemon.brokers.lifecycle import OrderEvent, OrderState

__all__ = ["Broker", "BrokerEventSink", "OpenOrder", "OrderEvent", "OrderState"]
