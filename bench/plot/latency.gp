# bench/plot/latency.gp - Nexmark end-to-end latency percentiles at 50 % of each query's
# maximum rate, without (left) and with (right) a checkpoint every second, log scale, with
# the issue's p99 targets.
set terminal pngcairo size 1400,560 font "DejaVu Sans,11"
set output outdir."/latency.png"
set multiplot layout 1,2 title "Nexmark source-to-sink latency at 50 % of the maximum rate"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set yrange [0.001:1000]
set format y "%g"
set grid ytics mytics
set key top left
set xtics font ",10"
set bmargin 4
set key opaque
set ylabel "ms (log scale)"
set title "without checkpoints"
set arrow 1 from graph 0, first 10 to graph 1, first 10 nohead dt 2 lw 2 lc rgb "#cc3311" front
plot datadir."/latency.dat" using 2:xtic(1) title "p50" lc rgb "#4477aa", \
     "" using 3 title "p99" lc rgb "#ee7733", \
     "" using 4 title "p99.9" lc rgb "#999999", \
     NaN with lines dt 2 lw 2 lc rgb "#cc3311" title "p99 target: 10 ms"
set title "with a checkpoint every second"
set arrow 1 from graph 0, first 50 to graph 1, first 50 nohead dt 2 lw 2 lc rgb "#cc3311" front
plot datadir."/latency.dat" using 5:xtic(1) title "p50" lc rgb "#4477aa", \
     "" using 6 title "p99" lc rgb "#ee7733", \
     "" using 7 title "p99.9" lc rgb "#999999", \
     NaN with lines dt 2 lw 2 lc rgb "#cc3311" title "p99 target: 50 ms"
unset multiplot
