"""The dashboard package's public names."""

from __future__ import annotations


def test_the_dashboard_package_exports_exactly_its_all() -> None:
    from cloudqueue import dashboard

    assert sorted(dashboard.__all__) == ["app", "check_bind", "is_loopback", "parse_basic_auth", "queues_of",
                                         "serve", "wsgi_app"]
    public = {n for n, v in vars(dashboard).items() if not n.startswith("_") and callable(v)
              and getattr(v, "__module__", "").startswith("cloudqueue.dashboard")}
    assert public == set(dashboard.__all__)
