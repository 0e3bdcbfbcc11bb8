"""syncd: provision Hybridbox mailboxes for new hires from a directory or an HR export."""

__version__ = "0.1.0"
