"""Copy into the Helm chart what it shares with the kustomize manifests, so each has one source:
the CRDs (crds/, generated from the models), the operator's RBAC (manifests/operator), the
AcceleratorClasses (manifests/acceleratorclasses),
the alert rules (manifests/monitoring/prometheusrule.yaml) and the Grafana dashboard
(manifests/dashboards). A chart cannot read files outside its directory, hence the copies.

    python hack/tools/sync_chart.py           # write the copies (`make chart`)
    python hack/tools/sync_chart.py --check   # exit 1 naming every copy that is not current
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "edgetenant"


def wanted() -> dict[Path, str]:
    """Chart path -> the content it must have."""
    files: dict[Path, str] = {}
    for crd in sorted((REPO / "crds").glob("*.edgetenant.io.yaml")):
        files[CHART / "crds" / crd.name] = crd.read_text()
    for name in ("rbac.yaml", "leader-election.yaml"):
        files[CHART / "files" / "operator" / name] = (REPO / "manifests" / "operator" / name).read_text()
    for klass in sorted((REPO / "manifests" / "acceleratorclasses").glob("*.yaml")):
        if klass.name != "kustomization.yaml":
            files[CHART / "files" / "acceleratorclasses" / klass.name] = klass.read_text()
    rule = yaml.safe_load((REPO / "manifests" / "monitoring" / "prometheusrule.yaml").read_text())
    header = "# Copied from manifests/monitoring/prometheusrule.yaml by `make chart`; edit that file.\n"
    files[CHART / "files" / "prometheus-rules.yaml"] = header + yaml.safe_dump(
        {"groups": rule["spec"]["groups"]}, sort_keys=False, width=1000
    )
    dashboard = REPO / "manifests" / "dashboards" / "edgetenant.json"
    files[CHART / "files" / "dashboards" / "edgetenant.json"] = dashboard.read_text()
    return files


def stale() -> list[Path]:
    """Copies that differ from their source, and files in the copied folders that have none."""
    files = wanted()
    out = [path for path, text in files.items() if not path.is_file() or path.read_text() != text]
    for folder in (CHART / "crds", CHART / "files" / "acceleratorclasses", CHART / "files" / "operator"):
        out += [p for p in sorted(folder.glob("*.yaml")) if p not in files]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="only report copies that are not current")
    args = parser.parse_args()
    if args.check:
        for path in stale():
            print(f"{path.relative_to(REPO)}: not current; run `make chart`", file=sys.stderr)
        return 1 if stale() else 0
    for path in stale():
        if path in wanted():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(wanted()[path])
        else:
            path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
