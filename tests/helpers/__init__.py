"""Test helpers shared by every suite: hostile peers (hostile.py), the nginx fixture (nginx.py)."""
