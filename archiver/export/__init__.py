"""archiver.export."""
