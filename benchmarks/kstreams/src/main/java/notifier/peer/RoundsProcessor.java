package notifier.peer;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.util.ArrayList;
import java.util.List;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.processor.PunctuationType;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueIterator;
import org.apache.kafka.streams.state.KeyValueStore;

/**
 * One chat's round: {@code handoff_requested} starts it with deadline = requested_at + time to
 * accept (the event's {@code time_to_accept_seconds}, else the configured default), {@code
 * agent_joined} / {@code ended} close it, and a wall-clock punctuator writes one Missed and one
 * chatbot record for each round whose deadline has passed, then forgets it.
 *
 * <p>Two stores, both RocksDB with a changelog: {@code rounds} (chat id -> round) and {@code
 * deadlines} (8-byte big-endian deadline + chat id -> nothing). RocksDB orders keys bytewise, so
 * the punctuator walks {@code deadlines} in deadline order and stops at the first one still ahead:
 * each scan costs the rounds that are due, not every round held. Two hints in memory keep it from
 * costing more (both rebuilt by the first scan after a restore or rebalance):
 *
 * <ul>
 *   <li>{@code nextDueMs}, a lower bound on the earliest deadline held: no scan at all while it is
 *       ahead (a punctuation every few milliseconds would otherwise open a RocksDB iterator each).
 *   <li>{@code scannedUpToMs}: every deadline at or before it has fired, so a scan seeks past it.
 *       A deleted key stays in RocksDB as a tombstone until compaction, and an iterator from the
 *       first key steps over every one of them: with rounds closing thousands a second, a scan
 *       from the start measured costs growing with every round ever closed.
 * </ul>
 *
 * <p>Records it cannot read are counted and skipped (the peer has no dead-letter topic).
 */
final class RoundsProcessor implements Processor<String, byte[], String, byte[]> {
  static final String MISSED_SINK = "missed";
  static final String CHATBOT_SINK = "chatbot";
  private static final String REQUESTED = "livechat.chat.handoff_requested";
  private static final String JOINED = "livechat.chat.agent_joined";
  private static final String ENDED = "livechat.chat.ended";
  private static final byte[] NOTHING = new byte[0];
  private static final JsonFactory JSON = new JsonFactory();

  private final long defaultTtaMs;
  private final long punctuateMs;
  private final String source;
  private ProcessorContext<String, byte[]> context;
  private KeyValueStore<String, byte[]> rounds;
  private KeyValueStore<Bytes, byte[]> deadlines;
  private long unreadable;
  private long nextDueMs = Long.MIN_VALUE;
  private long scannedUpToMs = Long.MIN_VALUE;

  RoundsProcessor(long defaultTtaMs, long punctuateMs, String source) {
    this.defaultTtaMs = defaultTtaMs;
    this.punctuateMs = punctuateMs;
    this.source = source;
  }

  @Override
  public void init(ProcessorContext<String, byte[]> context) {
    this.context = context;
    this.rounds = context.getStateStore(RoundsApp.ROUNDS_STORE);
    this.deadlines = context.getStateStore(RoundsApp.DEADLINES_STORE);
    context.schedule(Duration.ofMillis(punctuateMs), PunctuationType.WALL_CLOCK_TIME, this::fireDue);
  }

  @Override
  public void process(Record<String, byte[]> record) {
    Event event;
    try {
      event = Event.parse(record.value());
    } catch (IOException | RuntimeException error) {
      skip("unreadable record: " + error.getClass().getSimpleName());
      return;
    }
    if (event.chatId == null || event.type == null) {
      skip("no chat_id or type");
      return;
    }
    switch (event.type) {
      case REQUESTED -> request(event);
      case JOINED, ENDED -> close(event.chatId);
      default -> { } // other event types do not concern rounds
    }
  }

  private void request(Event event) {
    if (event.requestedAtMs == null || event.siteId == null) {
      skip("handoff_requested without requested_at or site_id");
      return;
    }
    if (rounds.get(event.chatId) != null) {
      return; // a round is pending already
    }
    long tta = event.ttaSeconds != null ? event.ttaSeconds * 1000 : defaultTtaMs;
    Round round = new Round(event.requestedAtMs + tta, event.requestedAtMs, event.siteId, event.id);
    rounds.put(event.chatId, round.encode());
    deadlines.put(deadlineKey(round.deadlineMs, event.chatId), NOTHING);
    nextDueMs = Math.min(nextDueMs, round.deadlineMs);
    scannedUpToMs = Math.min(scannedUpToMs, round.deadlineMs - 1); // already due: the next scan sees it
  }

  private void close(String chatId) {
    byte[] stored = rounds.get(chatId);
    if (stored == null) {
      return;
    }
    rounds.delete(chatId);
    deadlines.delete(deadlineKey(Round.decode(stored).deadlineMs, chatId));
  }

  private void fireDue(long nowMs) {
    if (nowMs < nextDueMs) {
      return;
    }
    List<Bytes> due = new ArrayList<>();
    long next = Long.MAX_VALUE;
    Bytes from = scannedUpToMs == Long.MIN_VALUE ? null : deadlineKey(scannedUpToMs + 1, "");
    try (KeyValueIterator<Bytes, byte[]> it = deadlines.range(from, null)) {
      while (it.hasNext()) {
        KeyValue<Bytes, byte[]> entry = it.next();
        long deadline = ByteBuffer.wrap(entry.key.get()).getLong();
        if (deadline > nowMs) {
          next = deadline; // ordered by deadline: everything after this one is ahead too
          break;
        }
        due.add(entry.key);
      }
    }
    nextDueMs = next;
    scannedUpToMs = nowMs;
    for (Bytes key : due) {
      String chatId = new String(key.get(), 8, key.get().length - 8, StandardCharsets.UTF_8);
      byte[] stored = rounds.get(chatId);
      deadlines.delete(key);
      if (stored == null) {
        continue;
      }
      rounds.delete(chatId);
      Round round = Round.decode(stored);
      context.forward(new Record<>(chatId, missed(chatId, round, nowMs), nowMs), MISSED_SINK);
      context.forward(new Record<>(chatId, chatbot(chatId, round, nowMs), nowMs), CHATBOT_SINK);
    }
  }

  private void skip(String why) {
    unreadable++;
    if (Long.bitCount(unreadable) == 1) { // 1st, 2nd, 4th, 8th, ...: a trace, not a flood
      System.err.println("skipped record (" + unreadable + " so far): " + why);
    }
  }

  static Bytes deadlineKey(long deadlineMs, String chatId) {
    byte[] id = chatId.getBytes(StandardCharsets.UTF_8);
    return Bytes.wrap(ByteBuffer.allocate(8 + id.length).putLong(deadlineMs).put(id).array());
  }

  private byte[] missed(String chatId, Round round, long nowMs) {
    return envelope(
        "missed-" + round.requestId,
        "livechat.chat.missed",
        nowMs,
        json -> {
          json.writeStringField("chat_id", chatId);
          json.writeStringField("site_id", round.siteId);
          json.writeStringField("requested_at", Instant.ofEpochMilli(round.requestedAtMs).toString());
          json.writeStringField("deadline_at", Instant.ofEpochMilli(round.deadlineMs).toString());
          json.writeStringField("missed_at", Instant.ofEpochMilli(nowMs).toString());
          json.writeNumberField("agents_notified", 0);
          json.writeNumberField("devices_notified", 0);
        });
  }

  private byte[] chatbot(String chatId, Round round, long nowMs) {
    return envelope(
        "chatbot-" + round.requestId,
        "livechat.chatbot.send_message",
        nowMs,
        json -> {
          json.writeStringField("chat_id", chatId);
          json.writeStringField("site_id", round.siteId);
          json.writeStringField("reason", "no_agent_accepted");
          json.writeStringField("text", "Sorry, nobody could take your chat right now.");
          json.writeObjectFieldStart("contact");
          json.writeEndObject();
        });
  }

  private interface Fields {
    void write(JsonGenerator json) throws IOException;
  }

  private byte[] envelope(String id, String type, long atMs, Fields data) {
    ByteArrayOutputStream out = new ByteArrayOutputStream(384);
    try (JsonGenerator json = JSON.createGenerator(out)) {
      json.writeStartObject();
      json.writeStringField("specversion", "1.0");
      json.writeStringField("id", id);
      json.writeStringField("source", source);
      json.writeStringField("type", type);
      json.writeStringField("time", Instant.ofEpochMilli(atMs).toString());
      json.writeStringField("datacontenttype", "application/json");
      json.writeObjectFieldStart("data");
      data.write(json);
      json.writeEndObject();
      json.writeEndObject();
    } catch (IOException error) {
      throw new IllegalStateException("writing JSON to memory failed", error);
    }
    return out.toByteArray();
  }

  /** What a pending round keeps: deadline, request time, site and the request's event id. */
  record Round(long deadlineMs, long requestedAtMs, String siteId, String requestId) {
    byte[] encode() {
      byte[] site = siteId.getBytes(StandardCharsets.UTF_8);
      byte[] id = requestId.getBytes(StandardCharsets.UTF_8);
      return ByteBuffer.allocate(8 + 8 + 4 + site.length + id.length)
          .putLong(deadlineMs)
          .putLong(requestedAtMs)
          .putInt(site.length)
          .put(site)
          .put(id)
          .array();
    }

    static Round decode(byte[] bytes) {
      ByteBuffer buffer = ByteBuffer.wrap(bytes);
      long deadline = buffer.getLong();
      long requestedAt = buffer.getLong();
      int siteLength = buffer.getInt();
      String site = new String(bytes, 20, siteLength, StandardCharsets.UTF_8);
      String id = new String(bytes, 20 + siteLength, bytes.length - 20 - siteLength, StandardCharsets.UTF_8);
      return new Round(deadline, requestedAt, site, id);
    }
  }

  /** The fields of a chat event's CloudEvents envelope this job reads, with a streaming parser. */
  static final class Event {
    String id = "";
    String type;
    String chatId;
    String siteId;
    Long requestedAtMs;
    Long ttaSeconds;

    static Event parse(byte[] value) throws IOException {
      Event event = new Event();
      if (value == null) {
        return event;
      }
      try (JsonParser json = JSON.createParser(value)) {
        if (json.nextToken() != JsonToken.START_OBJECT) {
          throw new IOException("not a JSON object");
        }
        while (json.nextToken() == JsonToken.FIELD_NAME) {
          String name = json.currentName();
          JsonToken token = json.nextToken();
          switch (name) {
            case "id" -> event.id = json.getValueAsString("");
            case "type" -> event.type = json.getValueAsString();
            case "data" -> {
              if (token == JsonToken.START_OBJECT) {
                event.readData(json);
              } else {
                json.skipChildren();
              }
            }
            default -> json.skipChildren();
          }
        }
      }
      return event;
    }

    private void readData(JsonParser json) throws IOException {
      while (json.nextToken() == JsonToken.FIELD_NAME) {
        String name = json.currentName();
        json.nextToken();
        switch (name) {
          case "chat_id" -> chatId = json.getValueAsString();
          case "site_id" -> siteId = json.getValueAsString();
          case "requested_at" ->
              requestedAtMs = OffsetDateTime.parse(json.getValueAsString()).toInstant().toEpochMilli();
          case "time_to_accept_seconds" -> ttaSeconds = json.getValueAsLong();
          default -> json.skipChildren();
        }
      }
    }
  }
}
