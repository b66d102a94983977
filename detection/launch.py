"""Several CPU processes for Detectron2, joined through gloo. Detectron2's own `launch` always
initialises NCCL, which needs GPUs; this is its CPU twin, for tests and GPU-less machines."""
from __future__ import annotations

import torch.distributed as dist
import torch.multiprocessing as mp

from pretrain.engine.launch import free_port


def _ddp_on_cpu() -> None:
    """Detectron2 v0.6's DefaultTrainer wraps the model with create_ddp_model, which always passes
    device_ids=[local rank]: valid for GPU modules only. CPU modules need device_ids=None."""
    import detectron2.engine.defaults as defaults

    create = defaults.create_ddp_model
    if getattr(create, "_cpu_ready", False):
        return

    def create_ddp_model_cpu(model, **kwargs):
        kwargs.setdefault("device_ids", None)
        return create(model, **kwargs)

    create_ddp_model_cpu._cpu_ready = True
    defaults.create_ddp_model = create_ddp_model_cpu


def _cpu_worker(rank: int, world_size: int, port: int, main_func, args) -> None:
    from detectron2.utils import comm

    _ddp_on_cpu()
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world_size)
    # Detectron2 asks its "local" group for the local rank / size: one machine, all ranks.
    comm._LOCAL_PROCESS_GROUP = dist.new_group(list(range(world_size)))
    comm.synchronize()
    main_func(*args)


def launch_cpu(main_func, num_processes: int, args=()) -> None:
    if num_processes <= 1:
        main_func(*args)
        return
    mp.start_processes(_cpu_worker, args=(num_processes, free_port(), main_func, args),
                       nprocs=num_processes, start_method="spawn")
