"""How a pipeline process tells its supervisor what its exit means.

The supervisor (top layer) and the processes it runs (agents, flow) agree on these codes without
importing each other: both import them from here.
"""

from __future__ import annotations

#: A child exiting with this asks to be started again at once (e.g. to pick up new streams);
#: it is not a crash. 75 is EX_TEMPFAIL.
EXIT_RESTART = 75
