"""Monitoring plugins shipped with ldirectord (stdlib-only, fast to start): check_pulse."""
