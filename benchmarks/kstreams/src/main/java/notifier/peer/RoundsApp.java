package notifier.peer;

import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.CloseOptions;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.StoreBuilder;
import org.apache.kafka.streams.state.Stores;

/**
 * The Kafka Streams peer of the worker: chat events in, one Missed and one chatbot record out per
 * round nobody accepted in time. See README.md beside the POM for the configuration and why.
 *
 * <p>Usage: {@code RoundsApp key=value ...} with bootstrap, application_id, input, missed, chatbot,
 * state_dir, default_tta_s, punctuate_ms and any Kafka Streams / client setting as
 * {@code streams.<name>=<value>} (applied last, so the driver can override a default).
 *
 * <p>Prints {@code STATE <new state> <epoch ms>} on every state change, so a driver can tell when
 * restoration is over and processing runs ({@code RUNNING}).
 */
public final class RoundsApp {
  static final String ROUNDS_STORE = "rounds";
  static final String DEADLINES_STORE = "deadlines";
  // Leave the group on close, so a replacement instance is assigned the partitions at once
  // instead of after the old member's session timeout (45 s), as a rolling restart would want.
  private static final CloseOptions CLOSE =
      CloseOptions.groupMembershipOperation(CloseOptions.GroupMembershipOperation.LEAVE_GROUP)
          .withTimeout(Duration.ofSeconds(10));

  private RoundsApp() {}

  public static void main(String[] args) throws InterruptedException {
    Map<String, String> options = parse(args);
    Topology topology = topology(options);
    Properties props = config(options);
    StreamsConfig effective = new StreamsConfig(props);
    // What the clients actually run with (Streams' own defaults and overrides applied), for the log.
    System.err.println("CONFIG streams " + props);
    System.err.println("CONFIG producer " + effective.getProducerConfigs("peer"));
    System.err.println("CONFIG consumer " + effective.getMainConsumerConfigs("peer", "peer", 0));
    KafkaStreams streams = new KafkaStreams(topology, props);
    CountDownLatch stopped = new CountDownLatch(1);
    streams.setStateListener(
        (now, before) -> {
          System.out.println("STATE " + now + " " + System.currentTimeMillis());
          System.out.flush();
          if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) {
            stopped.countDown();
          }
        });
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  streams.close(CLOSE);
                  stopped.countDown();
                }));
    streams.start();
    stopped.await();
    streams.close(CLOSE);
    if (streams.state() == KafkaStreams.State.ERROR) {
      System.exit(1);
    }
  }

  static Map<String, String> parse(String[] args) {
    Map<String, String> options = new HashMap<>();
    for (String arg : args) {
      int eq = arg.indexOf('=');
      if (eq <= 0) {
        throw new IllegalArgumentException("expected key=value, got " + arg);
      }
      options.put(arg.substring(0, eq), arg.substring(eq + 1));
    }
    return options;
  }

  static String required(Map<String, String> options, String name) {
    String value = options.get(name);
    if (value == null) {
      throw new IllegalArgumentException("missing " + name + "=...");
    }
    return value;
  }

  static Topology topology(Map<String, String> options) {
    long defaultTtaMs = Long.parseLong(options.getOrDefault("default_tta_s", "120")) * 1000;
    long punctuateMs = Long.parseLong(options.getOrDefault("punctuate_ms", "10"));
    // Persistent (RocksDB) stores; logging is on by default, so each gets a compacted changelog
    // topic `<application.id>-<store>-changelog` that a new instance restores from.
    StoreBuilder<KeyValueStore<String, byte[]>> rounds =
        Stores.keyValueStoreBuilder(
            Stores.persistentKeyValueStore(ROUNDS_STORE), Serdes.String(), Serdes.ByteArray());
    StoreBuilder<KeyValueStore<Bytes, byte[]>> deadlines =
        Stores.keyValueStoreBuilder(
            Stores.persistentKeyValueStore(DEADLINES_STORE), Serdes.Bytes(), Serdes.ByteArray());
    Topology topology = new Topology();
    topology.addSource(
        "chat-events",
        Serdes.String().deserializer(),
        Serdes.ByteArray().deserializer(),
        required(options, "input"));
    topology.addProcessor(
        "rounds",
        () -> new RoundsProcessor(defaultTtaMs, punctuateMs, options.getOrDefault("source", "urn:kstreams-peer")),
        "chat-events");
    topology.addStateStore(rounds, "rounds");
    topology.addStateStore(deadlines, "rounds");
    topology.addSink(
        RoundsProcessor.MISSED_SINK,
        required(options, "missed"),
        Serdes.String().serializer(),
        Serdes.ByteArray().serializer(),
        "rounds");
    topology.addSink(
        RoundsProcessor.CHATBOT_SINK,
        required(options, "chatbot"),
        Serdes.String().serializer(),
        Serdes.ByteArray().serializer(),
        "rounds");
    return topology;
  }

  static Properties config(Map<String, String> options) {
    Properties props = new Properties();
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, required(options, "application_id"));
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, required(options, "bootstrap"));
    props.put(StreamsConfig.STATE_DIR_CONFIG, required(options, "state_dir"));
    props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
    // One stream thread: the worker under comparison is one process with one event loop.
    props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
    // Low latency, as the Streams docs recommend (README.md cites them): under EOS a record is
    // visible to read_committed consumers only once its transaction commits, so the commit
    // interval bounds how soon a Missed is seen (default 100 ms under exactly_once_v2).
    props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 10);
    // How long the stream thread blocks in poll() when no input is there (default 100 ms): it
    // also delays the wall-clock punctuator, which is checked between polls.
    props.put(StreamsConfig.POLL_MS_CONFIG, 5);
    // Streams overrides the producer's linger.ms to 100 ms; a commit flushes the producer anyway,
    // so linger only adds latency to sends between commits.
    props.put(StreamsConfig.producerPrefix(ProducerConfig.LINGER_MS_CONFIG), 5);
    // The broker holds an empty fetch up to fetch.max.wait.ms (500 ms): the worker uses 20 ms.
    props.put(StreamsConfig.consumerPrefix(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG), 20);
    // A single-broker benchmark cluster.
    props.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
    props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
    for (Map.Entry<String, String> option : options.entrySet()) {
      if (option.getKey().startsWith("streams.")) {
        props.put(option.getKey().substring("streams.".length()), option.getValue());
      }
    }
    return props;
  }
}
