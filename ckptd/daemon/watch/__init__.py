"""Keeping the index in line with the folders: inotify events and periodic listings."""
