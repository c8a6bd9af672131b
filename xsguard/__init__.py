"""xsguard: pre-flight admission control for dom0 event channels on XenServer / XCP-ng."""

__version__ = "0.1.0"
