// Command pubsub_emulator serves Google's in-memory Pub/Sub fake (pstest) over gRPC on one address.
//
// DroneCop's tests point the Python Pub/Sub client and Beam at it with PUBSUB_EMULATOR_HOST.
// It prints one line, "pubsub emulator listening on HOST:PORT", once the server answers and the
// topic and subscription given by flags exist; it stops on SIGINT or SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	pb "cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
)

func main() {
	address := flag.String("address", "127.0.0.1:8085", "host:port to serve on")
	topic := flag.String("topic", "", "topic to create first, projects/P/topics/T")
	subscription := flag.String("subscription", "", "subscription of -topic to create, projects/P/subscriptions/S")
	flag.Parse()
	if *subscription != "" && *topic == "" {
		fail("-subscription needs -topic")
	}

	server := pstest.NewServerWithAddress(*address)
	defer server.Close()
	if err := create(&server.GServer, *topic, *subscription); err != nil {
		fail(err.Error())
	}
	fmt.Printf("pubsub emulator listening on %s\n", server.Addr)

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}

// create makes the topic and its subscription, when named; either may be left empty.
func create(server *pstest.GServer, topic, subscription string) error {
	ctx := context.Background()
	if topic != "" {
		if _, err := server.CreateTopic(ctx, &pb.Topic{Name: topic}); err != nil {
			return fmt.Errorf("creating topic %s: %w", topic, err)
		}
	}
	if subscription != "" {
		if _, err := server.CreateSubscription(ctx, &pb.Subscription{Name: subscription, Topic: topic}); err != nil {
			return fmt.Errorf("creating subscription %s: %w", subscription, err)
		}
	}
	return nil
}

func fail(reason string) {
	fmt.Fprintf(os.Stderr, "pubsub_emulator: %s\n", reason)
	os.Exit(2)
}
