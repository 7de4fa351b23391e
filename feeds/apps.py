from django.apps import AppConfig


class FeedsConfig(AppConfig):
    name = "feeds"
    verbose_name = "Feeds: instruments, providers and pools"

    def ready(self) -> None:
        from feeds import signals  # noqa: F401  (connects the receivers)
