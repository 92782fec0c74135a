"""A first apply creates things in an order the clouds accept: read from Terraform's own graph.

Lambda refuses an event source mapping to a function that does not exist yet, so the
mapping must depend on the function. A module input given as a plain string orders
nothing; given as the function resource's attribute, it does. `terraform graph` of the
AWS example root shows which.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import Terraform

pytestmark = pytest.mark.slow

MAPPING = "module.orders_queue.aws_lambda_event_source_mapping.this"
FUNCTION = "aws_lambda_function.worker"
ROLE = "module.orders_queue.aws_iam_role.consumer"
ROLE_POLICY = "module.orders_queue.aws_iam_role_policy.consumer"


def dependencies(dot: str) -> dict[str, set[str]]:
    """Each node's direct dependencies (``"a" -> "b"``: a depends on b)."""
    edges: dict[str, set[str]] = {}
    for source, target in re.findall(r'^\s*"([^"]+)" -> "([^"]+)"', dot, re.M):
        edges.setdefault(source, set()).add(target)
    return edges


def depends_on(edges: dict[str, set[str]], node: str, on: str) -> bool:
    seen: set[str] = set()
    todo = [node]
    while todo:
        current = todo.pop()
        for nxt in edges.get(current, ()):
            if nxt == on:
                return True
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return False


@pytest.fixture(scope="module")
def aws_example_graph(terraform: Terraform, scratch: Path) -> dict[str, set[str]]:
    root = scratch / "terraform" / "examples" / "aws"
    terraform.run("init", "-backend=false", "-no-color", cwd=root)
    dot = terraform.run("graph", "-no-color", cwd=root).stdout
    edges = dependencies(dot)
    assert MAPPING in edges and FUNCTION in edges, dot
    return edges


def test_the_event_source_mapping_is_created_after_the_function(
        aws_example_graph: dict[str, set[str]]) -> None:
    assert depends_on(aws_example_graph, MAPPING, FUNCTION), \
        "the mapping does not depend on the function: pass function_name as its attribute"


def test_the_mapping_waits_for_the_role_policy_that_lets_lambda_read_the_queue(
        aws_example_graph: dict[str, set[str]]) -> None:
    assert depends_on(aws_example_graph, MAPPING, ROLE_POLICY)


def test_the_function_takes_the_module_role_without_a_cycle(aws_example_graph: dict[str, set[str]]) -> None:
    assert depends_on(aws_example_graph, FUNCTION, ROLE)
    assert not depends_on(aws_example_graph, FUNCTION, MAPPING)
    assert not depends_on(aws_example_graph, FUNCTION, ROLE_POLICY)
