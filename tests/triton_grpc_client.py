"""Run by the Triton environment's Python (tests/test_triton_server.py): slimbert's environment
cannot hold tritonclient[grpc], whose protobuf < 7 pin conflicts with its own.

Reads {"url", "model", "texts", "pairs" (or null), "batch"} as JSON on stdin, sends the texts to
the model over gRPC in requests of `batch` rows, prints {"logits": [[...], ...]} on stdout.
"""

import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient


def main() -> None:
    job = json.load(sys.stdin)
    client = grpcclient.InferenceServerClient(job["url"])
    texts, pairs, batch = job["texts"], job["pairs"], job["batch"]
    logits = []
    for start in range(0, len(texts), batch):
        inputs = []
        columns = [("TEXT", texts)] + ([("TEXT_PAIR", pairs)] if pairs is not None else [])
        for name, values in columns:
            chunk = np.array([[v.encode()] for v in values[start : start + batch]], dtype=object)
            tensor = grpcclient.InferInput(name, list(chunk.shape), "BYTES")
            tensor.set_data_from_numpy(chunk)
            inputs.append(tensor)
        result = client.infer(job["model"], inputs)
        logits.extend(result.as_numpy(job["output"]).tolist())
    json.dump({"logits": logits}, sys.stdout)


if __name__ == "__main__":
    main()
