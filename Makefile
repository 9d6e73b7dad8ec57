# freshvec: one command to set up and test, one to set up and run.
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup services-up services-down test run demo bench-freshness bench-serve bench-autoscale bench-reindex bench-gpu chaos sim-up sim-down sim-regions lock clean-state

## setup: venv with pinned packages, Kafka jars, weaviate-server binary (idempotent, cached)
setup:
	@bash deploy/local/setup.sh

## services-up: start the local Kafka broker (127.0.0.1:9092) and Weaviate (8080, gRPC 50051)
services-up: setup
	@$(PY) -m freshvec.deploy.local.stack up

## services-down: stop them (data stays in .run/ until `make clean-state`)
services-down:
	@if [ -x $(PY) ]; then $(PY) -m freshvec.deploy.local.stack down; fi

## test: set up, start the services, run the tests, stop the services; fails when pytest does
test: services-up
	@rc=0; $(PY) -m pytest $(PYTEST_ARGS) || rc=$$?; $(MAKE) --no-print-directory services-down; exit $$rc

## run: set up, start the services and run the main job: the pipeline with the demo corpus flowing in
run: services-up
	@.venv/bin/freshvec run --config deploy/local/freshvec.yaml --produce-demo 2000 --rate 50

## demo: ingest 300 demo documents end to end, print count, freshness and a search, exit
demo: services-up
	@.venv/bin/freshvec demo -n 300

## bench-freshness: latency under load and max throughput, freshvec vs Quix Streams and a batched loop,
## 3 interleaved runs (17-40 min on 2 cores) -> bench/results/freshness.{json,png}
bench-freshness: services-up
	@$(PY) bench/freshness.py

## bench-serve: raw model vs our HTTP endpoint vs Infinity (ONNX and torch) -> bench/results/serve.{json,png}
bench-serve: setup
	@bash bench/setup_infinity.sh || echo "bench-serve: an Infinity venv did not install; bench/serve.py records why"
	@$(PY) bench/serve.py

## bench-autoscale: idle -> burst -> idle under each autoscaling setting -> bench/results/autoscale.{json,png}
bench-autoscale: services-up
	@$(PY) bench/autoscale.py

## bench-reindex: `freshvec reindex` of 20,000 documents while streaming and searching -> bench/results/reindex.{json,png}
bench-reindex: services-up
	@$(PY) bench/reindex.py

## bench-gpu: GPU replicas (fp16, 1/2/4 sharing one GPU) on a CUDA machine -> bench/results/gpu.json
bench-gpu: setup
	@$(PY) bench/gpu.py

## chaos: faults (consumer, Serve replica, Weaviate, Kafka) while producing -> bench/results/chaos.json
chaos: services-up
	@$(PY) bench/chaos.py

## sim-up: two simulated regions on this machine (needs root): hosts as network namespaces with sshd,
## a Kafka broker per region, Weaviate, 40 ms round trip between the regions (Toxiproxy)
sim-up: setup
	@$(PY) -m freshvec.deploy.sim up

## sim-down: remove every namespace, link, process and file sim-up made (also after a failed sim-up)
sim-down:
	@if [ -x $(PY) ]; then $(PY) -m freshvec.deploy.sim down; fi

## sim-regions: on the simulated layout, `ray up` each region in turn; freshness with the consumers in
## the events' region vs across the WAN -> bench/results/regions.{json,png} (~10 min)
sim-regions: sim-up
	@$(PY) bench/regions.py

## lock: re-resolve requirements.lock from pyproject.toml
lock:
	@$${FRESHVEC_CACHE:-$$HOME/.cache/freshvec}/uv-0.13.9/bin/uv pip compile -q pyproject.toml --extra test \
		--python-version 3.11 -o requirements.lock

## clean-state: stop the services and delete their data, logs and pid files
clean-state: services-down
	rm -rf .run
