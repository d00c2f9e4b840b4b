from django.apps import AppConfig


class BenchConfig(AppConfig):
    name = "bench"
    label = "clawsite_bench"
    verbose_name = "Benchmarks"

    def ready(self) -> None:
        from . import noop  # noqa: F401  (registers the bench_noop tool)
