"""Where the gateway keeps its things, named once for the daemon and the commands around it
(doctor, provision, backup): the service user and the files of its state folder."""

from __future__ import annotations

SERVICE_USER = "nbedge"
"""The system user the gateway runs as (the package makes it; docs/installer.md)."""
CREDENTIAL_KEY_FILE = "credential-key"
"""In the state folder: the key of the credential pseudonyms (docs/gate-controller.md)."""
