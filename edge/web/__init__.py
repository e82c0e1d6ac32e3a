"""The gateway's local web app: the grid workers' console and the local JSON API (no internet).

``create_local_app(gateway, people, site)`` builds it; ``GatewayView`` is what it may see of the
running gateway, ``ConsoleSite`` the names and settings of the site. See docs/grid-worker.md for
the console and docs/people.md for who may do what.
"""

from edge.web.app import create_local_app
from edge.web.view import Changes, ConsoleSite, GatewayView

__all__ = ["Changes", "ConsoleSite", "GatewayView", "create_local_app"]
