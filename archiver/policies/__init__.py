"""archiver.policies."""
