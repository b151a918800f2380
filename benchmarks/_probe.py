import argparse, tempfile, sys
from pathlib import Path
from benchmarks import gpu
from alprd import log; log.configure('console','warning')
ns = argparse.Namespace(vehicle='vehicle-yolov8n-coco.onnx', plate='plate-yolov8n.pt', ocr='trained/ocr-alprd-plate.onnx', dictionary='trained/ocr-alprd-plate-dict.txt', ocr_backend='torch')
clips=[gpu.decode(v, 300, True)[0] for v in sorted(Path('.benchdata/videos').glob('*.mp4'))]
streams=[]
for i in range(16):
    c=clips[i%3]; o=(i*37)%len(c); streams.append(c[o:]+c[:o])
with tempfile.TemporaryDirectory() as t:
    cfg=gpu.site(Path(t), ns, 16)
    r=gpu.many_streams(cfg, streams, int(sys.argv[1]))
    print('16 streams fps', round(r['fps'],1), {k: round(sorted(v)[len(v)//2]*1000,1) for k,v in r['stages'].items()}, flush=True)
