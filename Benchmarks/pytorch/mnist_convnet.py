"""PyTorch reference for `tandem train --model convnet --dataset mnist`: the seed's ConvNet with
the shared recipe and timing rule of mnist_train.py. Reads the repository's Data/mnist IDX
files, so no download is needed.

    python Benchmarks/pytorch/mnist_convnet.py --batch-size 64 --threads 2 --epochs 1
"""
import torch.nn as nn

from mnist_train import main


class ConvNet(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.layer1 = nn.Sequential(nn.Conv2d(1, 16, kernel_size=5, stride=1, padding=2),
                                    nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(kernel_size=2, stride=2))
        self.layer2 = nn.Sequential(nn.Conv2d(16, 32, kernel_size=5, stride=1, padding=2),
                                    nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(kernel_size=2, stride=2))
        self.fc = nn.Linear(7 * 7 * 32, num_classes)

    def forward(self, x):
        out = self.layer2(self.layer1(x))
        return self.fc(out.reshape(out.size(0), -1))


if __name__ == "__main__":
    main("convnet", ConvNet, __doc__)
