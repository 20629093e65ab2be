"""A Binding the API server refuses part-way through a gang: the members bound with it are evicted.

The refusal is real: a ValidatingAdmissionPolicy denies the Binding of one member (``pods/binding``
CREATE for that pod name, in this test's namespace), so gangplace's other Bindings of the batch
succeed and that one fails with the API server's own error.
"""
from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import bound
from tests.e2e.harness import gpu_pod, wait_for
from tests.e2e.test_events import gangplace_events

pytestmark = pytest.mark.e2e


def refuse_binding_of(kube, ns: str, pod: str) -> str:
    name = f"refuse-binding-{ns}"[:63]
    kube.create("/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies", {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {"failurePolicy": "Fail",
                 "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                                         "operations": ["CREATE"], "resources": ["pods/binding"]}]},
                 "validations": [{"expression": f"object.metadata.name != '{pod}'",
                                  "message": f"e2e: the Binding of {pod} is refused"}]}})
    kube.create("/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings", {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"],
                 "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}}})
    return name


def test_a_refused_binding_leaves_no_member_of_the_gang_bound(gangplace, ns):
    kube = gangplace.kube
    policy = refuse_binding_of(kube, ns, "pb-2")
    try:
        time.sleep(2)  # the policy reaches the API server's admission cache
        for i in range(4):
            kube.create_pod(ns, gpu_pod(f"pb-{i}", gpus=8, gang="pb", size=4))
        undone = wait_for(lambda: (e := [x for x in gangplace_events(kube, ns) if x[1] == "GangPartialBindUndone"])
                          and len(e) == 3 and e, 60, "three GangPartialBindUndone Events")
        assert sorted(x[0] for x in undone) == ["pb-0", "pb-1", "pb-3"]
        failed = [x for x in gangplace_events(kube, ns) if x[1] == "FailedBinding"]
        assert failed and {x[0] for x in failed} == {"pb-2"} and "refused" in failed[0][2], failed
        kube.reap(ns)  # no kubelet: finish the evicted pods' termination
        wait_for(lambda: {p["metadata"]["name"] for p in kube.pods(ns)} == {"pb-2"}, 60,
                 "the evicted members gone, the refused one left pending")
        time.sleep(3)  # the refused member keeps being retried: it must never be bound alone
        assert not bound(kube, ns, "pb")
        assert not [x for x in gangplace_events(kube, ns) if x[1] == "GangPlaced"]
    finally:
        kube.delete(f"/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings/{policy}")
        kube.delete(f"/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies/{policy}")
