# Time to first token per target, from bench/routing/run.sh: the share of requests (y) whose first
# token came within x ms of their due time, log scale.
# gnuplot -e "files='a.cdf b.cdf'; titles='A|B'; out='plot.svg'" bench/routing/ttft_cdf.gp
# Each file: TTFT in ms, cumulative share, one line per successful request, sorted.
set terminal svg size 900,540 dynamic noenhanced font "sans,13" background rgb "white"
set output out
set title "Time to first token, the same trace through each target (streamed, open loop)"
set xlabel "time to first token from the request's due time (ms, log scale)"
set ylabel "share of requests"
set logscale x
set format x "%.0f"
set yrange [0:1]
set grid xtics ytics mxtics
set key bottom right box opaque
set style line 1 lc rgb "#d95f02" lw 2
set style line 2 lc rgb "#7570b3" lw 2
set style line 3 lc rgb "#1b9e77" lw 2
set style line 4 lc rgb "#666666" lw 2
plot for [i=1:words(files)] word(files, i) using 1:2 with steps ls i \
     title system("echo '" . titles . "' | cut -d'|' -f" . i)
