#!/usr/bin/python3
"""A training script written against Horovod's PyTorch API, in the shape of
Horovod's examples (a DistributedSampler per rank, the learning rate scaled
by the number of ranks, parameters and optimizer state broadcast from rank
0, the wrapped optimizer with its usual options, metrics averaged with
allreduce, a checkpoint from rank 0). The only change for kolo is the import
line. It trains a small classifier on a synthetic, learnable data set and,
as a last check, exits non-zero unless every rank ends with the same
parameters and the validation accuracy is well above chance.

Run: kolorun -np 2 python3 horovod_style_train.py --checkpoint /tmp/ckpt.pt
"""

import argparse
import sys

import torch
import torch.nn.functional as F
import torch.utils.data.distributed

import kolo.torch as hvd  # was: import horovod.torch as hvd


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(20, 32)
        self.fc2 = torch.nn.Linear(32, 4)

    def forward(self, x):
        return F.log_softmax(self.fc2(F.relu(self.fc1(x))), dim=1)


def synthetic_dataset(samples, seed):
    """Four classes, each a Gaussian blob around its own centre."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(4, 20, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 4, (samples,), generator=g)
    features = centres[labels] * 0.5 + torch.randn(samples, 20, generator=g)
    return torch.utils.data.TensorDataset(features, labels)


def metric_average(value, name):
    return hvd.allreduce(torch.tensor(value), name=name).item()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--fp16-allreduce", action="store_true")
    parser.add_argument("--use-adasum", action="store_true")
    parser.add_argument("--batches-per-allreduce", type=int, default=1)
    parser.add_argument("--gradient-predivide-factor", type=float, default=1.0)
    parser.add_argument("--checkpoint", default="")
    args = parser.parse_args()

    hvd.init()
    torch.manual_seed(42)
    torch.set_num_threads(1)

    train_set = synthetic_dataset(1024, seed=1)
    val_set = synthetic_dataset(256, seed=2)
    train_sampler = torch.utils.data.distributed.DistributedSampler(
        train_set, num_replicas=hvd.size(), rank=hvd.rank())
    train_loader = torch.utils.data.DataLoader(
        train_set, batch_size=args.batch_size, sampler=train_sampler)
    val_sampler = torch.utils.data.distributed.DistributedSampler(
        val_set, num_replicas=hvd.size(), rank=hvd.rank(), shuffle=False)
    val_loader = torch.utils.data.DataLoader(
        val_set, batch_size=args.batch_size, sampler=val_sampler)

    model = Net()
    lr_scaler = (args.batches_per_allreduce * hvd.size()
                 if not args.use_adasum else 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr * lr_scaler,
                                momentum=0.9)
    hvd.broadcast_parameters(model.state_dict(), root_rank=0)
    hvd.broadcast_optimizer_state(optimizer, root_rank=0)
    compression = (hvd.Compression.fp16 if args.fp16_allreduce
                   else hvd.Compression.none)
    optimizer = hvd.DistributedOptimizer(
        optimizer, named_parameters=model.named_parameters(),
        compression=compression,
        backward_passes_per_step=args.batches_per_allreduce,
        op=hvd.Adasum if args.use_adasum else hvd.Average,
        gradient_predivide_factor=args.gradient_predivide_factor)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1,
                                                gamma=0.8)

    accuracy = 0.0
    for epoch in range(1, args.epochs + 1):
        model.train()
        train_sampler.set_epoch(epoch)
        for batch_idx, (data, target) in enumerate(train_loader):
            optimizer.zero_grad()
            loss = F.nll_loss(model(data), target)
            loss.backward()
            optimizer.step()
        scheduler.step()

        model.eval()
        val_loss, correct = 0.0, 0.0
        with torch.no_grad():
            for data, target in val_loader:
                output = model(data)
                val_loss += F.nll_loss(output, target, reduction="sum").item()
                correct += output.argmax(1).eq(target).sum().item()
        val_loss = metric_average(val_loss / len(val_sampler), "avg_loss")
        accuracy = metric_average(correct / len(val_sampler), "avg_accuracy")
        if hvd.rank() == 0:
            print(f"epoch {epoch}: validation loss {val_loss:.4f}, "
                  f"accuracy {100 * accuracy:.1f}%", flush=True)
            if args.checkpoint:
                torch.save({"model": model.state_dict(),
                            "optimizer": optimizer.state_dict()},
                           args.checkpoint)

    parameters = torch.cat([p.detach().flatten() for p in model.parameters()])
    everyone = hvd.allgather_object(parameters)
    same = all(torch.equal(p, parameters) for p in everyone)
    if hvd.rank() == 0:
        print(f"ranks {hvd.size()}: identical parameters {same}, "
              f"final accuracy {100 * accuracy:.1f}%")
    return 0 if same and accuracy > 0.8 else 1


if __name__ == "__main__":
    sys.exit(main())
