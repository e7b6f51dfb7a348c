# Latency against offered load, from bench/run.sh's open-loop runs.
# gnuplot -e "data='open.dat'; out='plot.svg'" bench/latency_plot.gp
# data columns: offered req/s, then p50 µs, p99 µs, achieved req/s for direct, nginx, corral.
set terminal svg size 900,540 dynamic font "sans,13" background rgb "white"
set output out
set title "Open-loop latency against offered load (POST /api/generate, stream:false, 64 connections)"
set xlabel "offered load (requests per second)"
set ylabel "latency from intended send time (µs, log scale)"
set logscale y
set format y "%.0f"
set grid xtics ytics mytics
set key top left box opaque
set style line 1 lc rgb "#1b9e77" lw 2 pt 7 ps 0.8
set style line 2 lc rgb "#7570b3" lw 2 pt 5 ps 0.8
set style line 3 lc rgb "#d95f02" lw 2 pt 9 ps 0.9
plot data using 1:3 with linespoints ls 1 title "direct p99", \
     data using 1:6 with linespoints ls 2 title "nginx p99", \
     data using 1:9 with linespoints ls 3 title "corral p99", \
     data using 1:2 with linespoints ls 1 dt 2 title "direct p50", \
     data using 1:5 with linespoints ls 2 dt 2 title "nginx p50", \
     data using 1:8 with linespoints ls 3 dt 2 title "corral p50"
