"""Inside a node's pod: is this stop a scale-down (leave the configuration) or anything else (stay)?

A pod is stopped for many reasons: a rolling update of the template, a drain, an eviction, `kubectl
delete pod`, the whole StatefulSet deleted, or a scale-down. Only a scale-down removes a pod for
good, and a StatefulSet always removes the highest ordinals: the pod's ordinal is at or above the
replicas the StatefulSet now asks for. The preStop hook (`bullyproof leave --statefulset NAME`)
reads that number from the Kubernetes API with the pod's service account (a Role that may `get`
that one StatefulSet, nothing else) and decides with `leaves_on_stop`, a pure function.

Charts that removed the member in preStop on every stop (whatever the reason) broke rolling restarts;
those that compared the ordinal with a fixed initial size kept removing the grown members at every
restart. Reading the desired replicas at the moment of the stop tells the two apart.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")  # token, ca.crt, namespace


class StatefulSetUnreadable(Exception):
    """The StatefulSet could not be read; the message says why and what to check."""


@dataclass(frozen=True)
class StatefulSetState:
    replicas: int | None  # spec.replicas now; None: there is no such StatefulSet (deleted)
    deleting: bool = False  # metadata.deletionTimestamp is set: the whole set is going away


def leaves_on_stop(ordinal: int, state: StatefulSetState | None) -> tuple[bool, str]:
    """Whether pod `ordinal`, being stopped, leaves the configuration, and why in words.

    Leave only on a scale-down that removes this pod: 0 < replicas <= ordinal. Stay otherwise: a
    pod below the replicas is restarted (rolling update, drain, eviction) and comes back as the same
    member; a StatefulSet deleted, being deleted or scaled to zero stops the whole cluster, which
    keeps its configuration for when it comes back (members taken out one by one would lose their
    majority halfway); and a StatefulSet that could not be read (`state` None) decides nothing: a
    member kept by mistake is a member down (`bullyproof member remove N` fixes it), one removed by
    mistake would be a change nobody asked for."""
    if ordinal < 0:
        raise ValueError(f"a pod's ordinal is >= 0, got {ordinal}")
    if state is None:
        return False, "the StatefulSet could not be read: staying a member"
    if state.replicas is None or state.deleting:
        return False, "the StatefulSet is deleted or being deleted: the cluster stops, its members stay"
    if state.replicas == 0:
        return False, "the StatefulSet is scaled to zero: the cluster stops, its members stay"
    if ordinal >= state.replicas:
        return True, f"the StatefulSet now runs {state.replicas} pods and this is pod {ordinal}: leaving"
    return False, f"the StatefulSet still runs {state.replicas} pods, this one included (pod {ordinal}): a restart"


def _api_host(environ: Mapping[str, str]) -> str:
    host = environ.get("KUBERNETES_SERVICE_HOST")
    if not host:
        raise StatefulSetUnreadable("KUBERNETES_SERVICE_HOST is not set: not running in a Kubernetes pod")
    port = environ.get("KUBERNETES_SERVICE_PORT", "443")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def read_statefulset(
    name: str, account_dir: Path | None = None, environ: Mapping[str, str] | None = None, timeout_s: float = 5.0
) -> StatefulSetState:
    """GET apps/v1 StatefulSet `name` in the pod's own namespace with the pod's service account token
    (in `account_dir`, default SERVICE_ACCOUNT_DIR), verifying the API server with the account's
    ca.crt. 404: StatefulSetState(None). Anything else that is not the object: StatefulSetUnreadable
    with the reason."""
    environ = os.environ if environ is None else environ
    account_dir = SERVICE_ACCOUNT_DIR if account_dir is None else account_dir
    try:
        namespace = (account_dir / "namespace").read_text().strip()
        token = (account_dir / "token").read_text().strip()
        context = ssl.create_default_context(cafile=str(account_dir / "ca.crt"))
    except (OSError, ssl.SSLError) as exc:
        raise StatefulSetUnreadable(
            f"cannot read the pod's service account in {account_dir}: {exc} (is automountServiceAccountToken off?)"
        ) from None
    url = (
        f"https://{_api_host(environ)}/apis/apps/v1/namespaces/{urllib.parse.quote(namespace, safe='')}"
        f"/statefulsets/{urllib.parse.quote(name, safe='')}"
    )
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, context=context, timeout=timeout_s) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return StatefulSetState(None)
        hint = (
            (
                f": the pod's service account needs `get` on statefulsets/{name} in namespace {namespace} "
                "(the Role and RoleBinding `bullyproof k8s` writes)"
            )
            if exc.code in (401, 403)
            else ""
        )
        raise StatefulSetUnreadable(f"GET {url}: HTTP {exc.code} {exc.reason}{hint}") from None
    except (OSError, ValueError) as exc:  # URLError, TLS, timeouts, a body that is not JSON
        raise StatefulSetUnreadable(f"GET {url}: {exc}") from None
    try:
        replicas = body.get("spec", {}).get("replicas", 1)  # the API's default when unset
        deleting = bool(body.get("metadata", {}).get("deletionTimestamp"))
    except AttributeError:
        raise StatefulSetUnreadable(f"GET {url}: the answer is not a StatefulSet") from None
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise StatefulSetUnreadable(f"GET {url}: spec.replicas is {replicas!r}, not a count")
    return StatefulSetState(replicas, deleting)
