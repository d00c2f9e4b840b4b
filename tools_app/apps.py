from django.apps import AppConfig


class ToolsAppConfig(AppConfig):
    name = "tools_app"
    verbose_name = "Tools"

    def ready(self) -> None:
        import importlib

        from django.conf import settings

        from . import tools  # noqa: F401  (registers every tool)

        for module in getattr(settings, "CLAWSITE_EXTRA_TOOL_MODULES", []):
            importlib.import_module(module)
