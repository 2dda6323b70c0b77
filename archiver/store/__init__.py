"""archiver.store."""
