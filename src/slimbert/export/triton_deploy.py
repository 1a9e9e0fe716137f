"""What a platform team applies to run a Triton repository on Kubernetes: REPO-deploy/, beside
the repository (Triton would take a folder inside it for a model).

    Dockerfile         the NGC tritonserver image plus what the repository's Python models import
                       (tokenizers; onnxruntime too when the graph runs in the Python backend)
    kserve.yaml        a KServe InferenceService: Triton predictor (model format "triton", Open
                       Inference Protocol v2) reading the repository from --triton-storage-uri
    kubernetes.yaml    without KServe: a Deployment of tritonserver (readiness on
                       /v2/health/ready, liveness on /v2/health/live) and a ClusterIP Service
                       (HTTP 8000, gRPC 8001, metrics 8002), the repository mounted from the
                       PersistentVolumeClaim the storage URI names

Scale-out is the platform's: raise `replicas` (or KServe's maxReplicas, which autoscales); each
replica is one tritonserver reading the same read-only repository. tests/test_triton_server.py
checks the manifests against the typed models of the Kubernetes and KServe Python SDKs (each
generated from its project's published OpenAPI schema): every field known, every required one set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml

from slimbert.errors import SlimbertError

# The NGC release whose tritonserver (2.51) is the one the nvidia-pytriton wheel ships, the
# server slimbert's tests start; its onnxruntime backend runs opsets up to 21.
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"
PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
MOUNT = "/models"


@dataclass(frozen=True)
class DeployConfig:
    """name: Kubernetes name of every resource (DNS-1123: lowercase letters, digits, '-');
    image: the image built from REPO-deploy/Dockerfile, as the cluster pulls it;
    storage_uri: where the repository lives for KServe (pvc://CLAIM/PATH, s3://, gs://, ...);
    the plain Deployment mounts pvc://CLAIM/PATH only;
    gpu: one NVIDIA GPU per replica; replicas: the Deployment's (KServe's maximum)."""

    name: str
    image: str
    storage_uri: str
    gpu: bool = False
    replicas: int = 1

    def __post_init__(self):
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", self.name):
            raise SlimbertError(
                f"Kubernetes name {self.name!r}: use lowercase letters, digits and '-' "
                "(at most 63, starting and ending with a letter or digit)"
            )
        if "://" not in self.storage_uri:
            raise SlimbertError(
                f"--triton-storage-uri {self.storage_uri!r}: give a URI such as "
                "pvc://slimbert-models/triton or s3://bucket/triton"
            )

    @property
    def claim(self) -> tuple[str, str] | None:
        """(claim, path inside it) of a pvc:// URI, else None."""
        match = re.fullmatch(r"pvc://([^/]+)/?(.*)", self.storage_uri)
        return (match.group(1), match.group(2)) if match else None


def kubernetes_name(triton_name: str) -> str:
    """A Triton model name (letters, digits, '_', '-') as a DNS-1123 name."""
    return re.sub(r"[^a-z0-9-]", "-", triton_name.lower()).strip("-")[:63] or "slimbert"


def dockerfile(packages: list[str]) -> str:
    return (
        "# tritonserver plus what the repository's Python models import (written by slimbert).\n"
        "# numpy stays below 2: the Python backend's stub reads BYTES tensors with numpy 1.\n"
        f"FROM {TRITON_IMAGE}\n"
        f"RUN pip install --no-cache-dir {' '.join(repr(p) for p in packages)}\n"
    )


def _resources(config: DeployConfig) -> dict:
    requests = {"cpu": "2", "memory": "4Gi"}
    limits = {"cpu": "2", "memory": "4Gi"}
    if config.gpu:
        limits["nvidia.com/gpu"] = "1"
    return {"requests": requests, "limits": limits}


def inference_service(config: DeployConfig) -> dict:
    """KServe v1beta1 InferenceService with a Triton predictor on the v2 protocol."""
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": config.name, "labels": {"app.kubernetes.io/name": config.name}},
        "spec": {
            "predictor": {
                "minReplicas": 1,
                "maxReplicas": config.replicas,
                "model": {
                    "modelFormat": {"name": "triton"},
                    "protocolVersion": "v2",
                    "storageUri": config.storage_uri,
                    "image": config.image,
                    "resources": _resources(config),
                },
            }
        },
    }


def _probe(path: str) -> dict:
    return {"httpGet": {"path": path, "port": PORTS["http"]}, "periodSeconds": 5}


def deployment(config: DeployConfig) -> list[dict]:
    """A Deployment of tritonserver on the repository, and the Service in front of it."""
    if config.claim is None:
        raise SlimbertError(
            f"the plain Deployment mounts the repository from a PersistentVolumeClaim: "
            f"--triton-storage-uri {config.storage_uri!r} is not pvc://CLAIM/PATH "
            "(kserve.yaml reads other storage itself)"
        )
    claim, path = config.claim

    def labels() -> dict:  # a fresh dict each time: one shared object dumps as a YAML anchor
        return {"app.kubernetes.io/name": config.name}

    mount = {"name": "repository", "mountPath": MOUNT, "readOnly": True}
    if path:
        mount["subPath"] = path
    container = {
        "name": "tritonserver",
        "image": config.image,
        "args": ["tritonserver", f"--model-repository={MOUNT}", "--strict-readiness=true"],
        "ports": [{"name": n, "containerPort": p} for n, p in PORTS.items()],
        "readinessProbe": _probe("/v2/health/ready"),
        "livenessProbe": _probe("/v2/health/live"),
        "resources": _resources(config),
        "volumeMounts": [mount],
    }
    volume = {"name": "repository", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": config.name, "labels": labels()},
            "spec": {
                "replicas": config.replicas,
                "selector": {"matchLabels": labels()},
                "template": {
                    "metadata": {"labels": labels()},
                    "spec": {"containers": [container], "volumes": [volume]},
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": config.name, "labels": labels()},
            "spec": {
                "selector": labels(),
                "ports": [{"name": n, "port": p, "targetPort": p} for n, p in PORTS.items()],
            },
        },
    ]


def deploy_files(config: DeployConfig, packages: list[str]) -> dict[str, str]:
    """REPO-deploy/'s files by name. The plain Deployment is written only for a pvc:// URI."""
    files = {
        "Dockerfile": dockerfile(packages),
        "kserve.yaml": yaml.safe_dump(inference_service(config), sort_keys=False),
    }
    if config.claim is not None:
        files["kubernetes.yaml"] = yaml.safe_dump_all(deployment(config), sort_keys=False)
    return files
