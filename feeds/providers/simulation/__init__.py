"""What both provider simulators share: the instruments they list, one seeded market that
both quote (so FYERS and Upstox agree unless a fault says otherwise), and labelled faults.

Sans-I/O: the simulators' servers drive ``MarketModel.step`` from their own clock.
"""
