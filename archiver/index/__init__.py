"""archiver.index."""
