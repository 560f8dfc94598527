"""certkeeper: keeps the certificates of Exchange Outlook Anywhere gateways alive, unattended."""

__version__ = "0.1.0"
