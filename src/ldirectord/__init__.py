"""ldirectord for Python: a drop-in Linux Virtual Server director daemon that cannot get stuck."""

__version__ = "0.1.0"
#: What ``ldirectord -v`` prints first, as Perl ldirectord does (scripts grep for it).
LEGACY_VERSION_LINE = "Linux Director v1.186-ha"
