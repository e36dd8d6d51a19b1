"""Framework adapters (LangGraph nodes, CrewAI runners); neither framework is imported."""

from ledger.compat.tbc.adapters.crewai_adapter import TBCCrewGovernor, govern_agent
from ledger.compat.tbc.adapters.langgraph_adapter import TBCGraphGovernor, govern_node

__all__ = ["TBCCrewGovernor", "TBCGraphGovernor", "govern_agent", "govern_node"]
