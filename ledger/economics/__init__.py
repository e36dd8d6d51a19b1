"""The pure economics of the ledger: exact money, prices in force, metering of the four cost flows,
cost allocation, netting and settlement, budgets, reallocation and reputation. No I/O anywhere below here."""
