"""archiver.normalize."""
