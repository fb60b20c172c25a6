"""The floors depend one way (README, "Layout"): entry points -> app/ -> training/,
input_pipeline/, cnns/. The library knows no application, the models no data or training."""

import ast
import os

import pytest

from tests.conftest import ROOT

FORBIDDEN = {
    'training': ('app',),
    'cnns': ('app', 'training', 'input_pipeline'),
    'input_pipeline': ('app', 'training', 'cnns'),
}


def is_main_block(node) -> bool:
  """`if __name__ == '__main__':`, where a module is run as a command (cnns.summary)."""
  return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
          and isinstance(node.test.left, ast.Name) and node.test.left.id == '__name__')


def imported_packages(path: str) -> set[str]:
  """Top-level packages `path` imports, outside its command block."""
  with open(path) as f:
    tree = ast.parse(f.read())
  tree.body = [node for node in tree.body if not is_main_block(node)]
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names.update(alias.name.split('.')[0] for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      names.add(node.module.split('.')[0])
  return names


@pytest.mark.parametrize('package', sorted(FORBIDDEN))
def test_imports_point_one_way(package):
  found = []
  for root, _, files in os.walk(os.path.join(ROOT, package)):
    for name in files:
      if name.endswith('.py'):
        path = os.path.join(root, name)
        wrong = imported_packages(path) & set(FORBIDDEN[package])
        found += [f'{os.path.relpath(path, ROOT)} imports {w}' for w in sorted(wrong)]
  assert not found
