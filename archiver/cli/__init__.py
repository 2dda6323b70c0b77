"""archiver.cli."""
