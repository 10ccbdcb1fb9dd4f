"""Risk: pre-trade checks between the strategy and the broker."""

from daemon.risk.gate import RiskGate, RiskView

__all__ = ["RiskGate", "RiskView"]
